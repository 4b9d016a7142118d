"""File formats and their readers/writers: audio, video, states CSVs, motion NPZs, the dataset folder,
the checksummed manifest of ``models/``, and atomic writes."""
