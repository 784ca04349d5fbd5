"""Worker entry points and the example workflows (``zart-es worker --app workers.examples``)."""
