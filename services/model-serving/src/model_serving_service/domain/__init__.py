"""Pure logic of model-serving: model specs, output adapters, input checks, service
statuses, scaling settings, archive safety, request keys and retry timing. No I/O and
no Triton client here (Triton's model configuration lives in ``adapters.triton_config``).
"""
