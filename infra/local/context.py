"""A small stand-in for the Lambda ``context`` object."""
from __future__ import annotations

import time
import uuid
from typing import Callable

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account


class FakeLambdaContext:
    """The attributes the Python Lambda runtime (awslambdaric) sets on ``context``.

    As in the real runtime, ``memory_limit_in_mb`` is a *string* (it is read from
    the AWS_LAMBDA_FUNCTION_MEMORY_SIZE environment variable).  ``chalice local``
    uses an int; code should not rely on either.
    """

    def __init__(
        self,
        function_name: str = "worker",
        memory_limit_in_mb: int | str = 128,
        timeout_seconds: float = 60,
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
        aws_request_id: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clock`: the time the deadline runs on (a test's injected clock, so that a handler's time
        left shrinks by the waits it made on that clock, not by how busy the machine is)."""
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        )
        self.memory_limit_in_mb = str(memory_limit_in_mb)
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"local/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self.timeout_seconds = timeout_seconds
        self._clock = clock
        self._deadline = clock() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._clock()) * 1000))

    def __repr__(self) -> str:
        return (
            f"FakeLambdaContext(function_name={self.function_name!r}, "
            f"aws_request_id={self.aws_request_id!r})"
        )
