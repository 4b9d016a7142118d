"""Data preparation: turning talking-face videos into training clips (states, FLAME tracks, manifest)."""
