"""The MLX worker (``python -m swayworker.mlx``): mlx-lm + a PEFT adapter, one model copy.

Importing this package does not import mlx; ``backend`` does.
"""

MLX_INSTALL_HINT = 'pip install "mlx[cpu]" mlx-lm  (on Apple silicon: pip install mlx mlx-lm)'
