from tests.adapter_fixtures import tiny_adapters  # noqa: F401
from tests.hf_fixtures import tiny_model  # noqa: F401
from tests.llamacpp_fixtures import llama_cpp, spm_ggufs, spm_tiny_model  # noqa: F401
from tests.mlx_fixtures import mlx_python, mlx_server  # noqa: F401
