"""Configuration: typed schema (schema.py), Hydra composition (compose.py), validation (validate.py),
flattening (flatten.py) and tracking URIs (uris.py). Import the module you need: this package's
``__init__`` imports nothing, so light modules (uris, flatten) stay light."""
