from tests.hf_fixtures import tiny_model  # noqa: F401
