"""Lambda functions tap ships: each `<name>/handler.py` is self-contained (standard library,
boto3 and pg8000 only) because it is packaged alone at the root of its function's archive."""
