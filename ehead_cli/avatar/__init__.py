"""Avatars: who is animated, and how they look.

``identity`` (the shape + reference frame + camera a generation starts from: ``--avatar FILE``) and
the photoreal, person-specific neural avatars of ``ehead avatar fit VIDEO --out AVATAR_DIR``:
``config`` (the renderer's architecture and the fitting schedule), ``field`` (features on the face
model's canonical surface), ``unet`` (the image network), ``neural`` (the differentiable renderer),
``losses`` (L1, MS-SSIM, VGG perceptual), ``capture`` (a video -> frames, head-centred motion,
identity shape, the face-centred crop and its camera), ``fit`` (the fitting loop), ``report`` (the
held-out metrics, the side-by-side figure, the card), ``folder`` (AVATAR_DIR on disk, checksummed)
and ``rendering`` (how generation picks the renderer of a job).
"""
