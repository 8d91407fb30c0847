"""Publishing a finished package (the output directory a run committed) to where serving picks it up.

One folder per destination (``mlflow/``). A publisher reads the package from disk — manifest.json,
signature.json, the artifacts and reports — never the pipeline's memory, so a package can be published
again later (``forgeml publish OUT``) and a failure to publish never touches what was written. It
imports ``targets`` (to run artifacts in their runtimes) and ``report``/``formats`` readers; only the
pipeline, the API and the CLI import it.
"""
