"""The wire protocol between the kernel and its clients: msgpack frames
validated by pydantic, the error codes, the default endpoint. Depends on
nothing but the error vocabulary in :mod:`batos.core.errors`."""
