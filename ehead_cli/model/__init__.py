"""The EmbodiedHead motion model: its typed configuration, audio encoders, the DiT, the rectified
flow, dataset statistics, the window contract and checkpoint folders."""
