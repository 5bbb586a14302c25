"""The Trainer gRPC service: a thin view of the training progress, plus health and reflection."""

from __future__ import annotations

import json
from concurrent import futures
from typing import Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.gan.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service.progress import Progress, ProgressTracker, TrainerState

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name
_FINAL_STATES = (TrainerState.FINISHED, TrainerState.FAILED)


def progress_to_proto(progress: Progress) -> trainer_pb2.TrainingProgress:
    message = trainer_pb2.TrainingProgress(
        state=int(progress.state), step=progress.step, total_steps=progress.total_steps,
        generator_loss=progress.generator_loss, discriminator_loss=progress.discriminator_loss,
        images_per_second=progress.images_per_second, eta_seconds=progress.eta_seconds,
        last_checkpoint_step=progress.last_checkpoint_step,
        last_published_version=progress.last_published_version, message=progress.message)
    message.updated_at.FromNanoseconds(int(progress.updated_at * 1e9))
    return message


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, tracker: ProgressTracker, describe_run: Callable[[], dict]) -> None:
        self._tracker = tracker
        self._describe_run = describe_run

    def GetStatus(self, request: trainer_pb2.GetStatusRequest, context: grpc.ServicerContext
                  ) -> trainer_pb2.GetStatusResponse:
        progress, _ = self._tracker.snapshot()
        run = self._describe_run()
        return trainer_pb2.GetStatusResponse(
            progress=progress_to_proto(progress), dataset=str(run.get("dataset", "")),
            architecture=str(run.get("architecture", "")), batch_size=int(run.get("batch_size") or 0),
            config_json=json.dumps(run, sort_keys=True))

    def WatchProgress(self, request: trainer_pb2.WatchProgressRequest, context: grpc.ServicerContext
                      ) -> Iterator[trainer_pb2.TrainingProgress]:
        progress, revision = self._tracker.snapshot()
        yield progress_to_proto(progress)
        while context.is_active() and progress.state not in _FINAL_STATES:
            progress, newer = self._tracker.wait_for_update(revision, timeout=1.0)
            if newer != revision:
                revision = newer
                yield progress_to_proto(progress)


def create_server(tracker: ProgressTracker, describe_run: Callable[[], dict], host: str, port: int,
                  ) -> tuple[grpc.Server, int]:
    """Builds and starts the server; returns it with the bound port (port 0 picks a free one)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="trainer-rpc"))
    trainer_pb2_grpc.add_TrainerServicer_to_server(TrainerServicer(tracker, describe_run), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (in use or not a local address)")
    server.start()
    return server, bound
