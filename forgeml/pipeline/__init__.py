"""The pipeline: ``config`` (what a run is asked to do), ``run`` (converter → passes → targets with
parity after each stage), ``provenance`` (what reproduces a run), and the front-end jobs built on it:
``sources`` (what the user named → a converter), ``compare`` (``forgeml parity A B``), ``reproduce``,
``inspection``."""
