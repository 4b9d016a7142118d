"""ehead: EmbodiedHead, a listening-and-speaking 3D head avatar for conversational agents.

The package is both the library and the ``ehead`` command line. One module per concern:
``layout`` (the motion vector), ``audio`` / ``states`` / ``motionfile`` / ``checkpoint`` (file
formats), ``face`` (face models), ``encoders`` (audio encoders), ``dit`` (the network),
``flow`` (rectified-flow maths), ``cli`` (the thin command-line shell).
"""

__version__ = "0.1.0"
