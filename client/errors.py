"""The client's one exception type: a failed call, with the gRPC status code kept."""

from __future__ import annotations

import grpc


class GanServiceError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, target: str) -> None:
        super().__init__(f"{code.name} from {target}: {details}")
        self.code = code
        self.details = details
        self.target = target

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError, target: str) -> "GanServiceError":
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        if code == grpc.StatusCode.UNAVAILABLE and "failed to connect" in (details or "").lower():
            details = f"cannot reach {target}; is the service running there? ({details})"
        return cls(code, details or "", target)
