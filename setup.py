"""Packaging beyond what pyproject.toml can say: the top-level ``models/`` folder (presets, model cards,
shipped checkpoints and their manifest; not Python) is installed as the package data
``ehead_cli/_models``, so a wheel carries what a source checkout has."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["ehead_cli", "ehead_cli.*"]), "ehead_cli._models"],
    package_dir={"ehead_cli._models": "models"},
    package_data={"ehead_cli._models": ["**/*"], "ehead_cli.serve": ["static/*"]},
)
