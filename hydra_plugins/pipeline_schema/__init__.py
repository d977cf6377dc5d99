"""Registers the app's config schemas when Hydra scans plugins (DVC's ``exp run -S``).

``conf/`` extends typed schemas that ``pipeline.config`` stores in Hydra's ConfigStore. DVC
composes ``conf/`` in its own process, which never imports the app; it does scan
``hydra_plugins`` under the repository root (``hydra.plugins_path``), so importing the config
module here makes ``dvc exp run -S model=softmax`` compose what ``python -m pipeline.compose``
composes.
"""

import pipeline.config  # noqa: F401  (registers the schemas on import)
