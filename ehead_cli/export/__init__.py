"""``ehead export``: a motion NPZ in the layouts other codebases read (``layouts``: ARTalk, GAGAvatar,
DualTalk, flame-npz) and as per-frame meshes of a face model (``meshes``: OBJ/PLY folders, one
vertices NPZ); ``run`` holds the format registry and the call the command makes. docs/formats.md
documents every layout."""

from ehead_cli.export.run import FORMATS, ExportResult, export_motion

__all__ = ["FORMATS", "ExportResult", "export_motion"]
