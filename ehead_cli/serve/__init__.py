"""``ehead serve``: live conversations over WebSocket (audio in, motion and frames out), many sessions
sharing one model, and the page that talks with the avatar.

``protocol``: the wire format and its validation; ``session``: a conversation and the batcher that
generates the windows of all conversations together; ``app``: the ASGI application (routes, the
token, the WebSocket loop); ``static/``: the page and its vendored three.js.
"""
