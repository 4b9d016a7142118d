"""Avatars: who is animated. ``identity`` is the shape + reference frame a generation starts from."""
