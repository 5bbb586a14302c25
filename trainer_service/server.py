"""The Trainer gRPC service: a thin view of the training progress, control requests handed to the
training loop, plus health and reflection."""

from __future__ import annotations

import json
from concurrent import futures
from typing import Callable, Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from gan_common.security import ServerSecurity, add_port
from protos.gan.v1 import trainer_pb2, trainer_pb2_grpc
from trainer_service.control import ControlRequests, Published, TrainerNotRunning
from trainer_service.progress import Progress, ProgressTracker, TrainerState

SERVICE_NAME = trainer_pb2.DESCRIPTOR.services_by_name["Trainer"].full_name
# The RPCs that change the run: an authorization interceptor (passed to create_server) guards these.
CONTROL_METHODS = frozenset(f"/{SERVICE_NAME}/{name}" for name in ("CheckpointNow", "Stop", "SetPublishInterval"))
_FINAL_STATES = (TrainerState.FINISHED, TrainerState.FAILED)


def progress_to_proto(progress: Progress) -> trainer_pb2.TrainingProgress:
    message = trainer_pb2.TrainingProgress(
        state=int(progress.state), step=progress.step, total_steps=progress.total_steps,
        generator_loss=progress.generator_loss, discriminator_loss=progress.discriminator_loss,
        images_per_second=progress.images_per_second, eta_seconds=progress.eta_seconds,
        last_checkpoint_step=progress.last_checkpoint_step,
        last_published_version=progress.last_published_version, message=progress.message,
        publish_every=progress.publish_every, resident_memory_bytes=progress.resident_memory_bytes)
    message.updated_at.FromNanoseconds(int(progress.updated_at * 1e9))
    return message


def _await_loop(answer: futures.Future, context: grpc.ServicerContext, what: str) -> Published:
    """Waits for the training loop to carry a request out, within the call's deadline."""
    try:
        return answer.result(timeout=context.time_remaining())
    except futures.TimeoutError:
        context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                      f"the trainer did not finish the {what} within the call's deadline (a step or a publish "
                      "takes long); it is still carried out: watch last_published_version, or retry with a "
                      "longer deadline")
    except TrainerNotRunning as error:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"the trainer is not training: {error}")


class TrainerServicer(trainer_pb2_grpc.TrainerServicer):
    def __init__(self, tracker: ProgressTracker, describe_run: Callable[[], dict],
                 control: ControlRequests | None = None) -> None:
        self._tracker = tracker
        self._describe_run = describe_run
        self._control = control

    def GetStatus(self, request: trainer_pb2.GetStatusRequest, context: grpc.ServicerContext
                  ) -> trainer_pb2.GetStatusResponse:
        progress, _ = self._tracker.snapshot()
        run = self._describe_run()
        return trainer_pb2.GetStatusResponse(
            progress=progress_to_proto(progress), dataset=str(run.get("dataset", "")),
            architecture=str(run.get("architecture", "")), batch_size=int(run.get("batch_size") or 0),
            config_json=json.dumps(run, sort_keys=True), strategy=str(run.get("strategy", "")),
            num_replicas=int(run.get("num_replicas") or 0))

    def WatchProgress(self, request: trainer_pb2.WatchProgressRequest, context: grpc.ServicerContext
                      ) -> Iterator[trainer_pb2.TrainingProgress]:
        progress, revision = self._tracker.snapshot()
        yield progress_to_proto(progress)
        while context.is_active() and progress.state not in _FINAL_STATES:
            progress, newer = self._tracker.wait_for_update(revision, timeout=1.0)
            if newer != revision:
                revision = newer
                yield progress_to_proto(progress)

    def CheckpointNow(self, request: trainer_pb2.CheckpointNowRequest, context: grpc.ServicerContext
                      ) -> trainer_pb2.CheckpointNowResponse:
        published = _await_loop(self._submit(context, lambda control: control.request_checkpoint()), context,
                                "checkpoint and publish")
        return trainer_pb2.CheckpointNowResponse(step=published.step, model_version=published.model_version)

    def Stop(self, request: trainer_pb2.StopRequest, context: grpc.ServicerContext) -> trainer_pb2.StopResponse:
        final = self._submit(context, lambda control: control.request_stop())
        if not request.wait:
            return trainer_pb2.StopResponse(step=self._tracker.snapshot()[0].step)
        published = _await_loop(final, context, "final checkpoint and publish")
        return trainer_pb2.StopResponse(step=published.step, model_version=published.model_version)

    def SetPublishInterval(self, request: trainer_pb2.SetPublishIntervalRequest, context: grpc.ServicerContext
                           ) -> trainer_pb2.SetPublishIntervalResponse:
        if request.publish_every <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"publish_every must be a positive number of steps, not {request.publish_every}")
        control = self._require_control(context)
        previous = control.set_publish_every(request.publish_every)
        self._tracker.update(publish_every=request.publish_every)
        return trainer_pb2.SetPublishIntervalResponse(publish_every=request.publish_every,
                                                      previous_publish_every=previous)

    def _require_control(self, context: grpc.ServicerContext) -> ControlRequests:
        if self._control is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "this Trainer server was started without control")
        return self._control

    def _submit(self, context: grpc.ServicerContext, request: Callable[[ControlRequests], futures.Future]
                ) -> futures.Future:
        try:
            return request(self._require_control(context))
        except TrainerNotRunning as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                          f"the trainer is not training ({error}); run it again to resume")


def create_server(tracker: ProgressTracker, describe_run: Callable[[], dict], host: str, port: int,
                  control: ControlRequests | None = None,
                  security: ServerSecurity = ServerSecurity()) -> tuple[grpc.Server, int]:
    """Builds and starts the server; returns it with the bound port (port 0 picks a free one).

    `control` enables the control RPCs (CONTROL_METHODS); `security` adds TLS and guards those RPCs
    with a token or client certificate (callers on this host only when neither is configured).
    """
    guard = security.interceptor(protected=CONTROL_METHODS.__contains__, local_without_credentials=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="trainer-rpc"),
                         interceptors=[guard])
    trainer_pb2_grpc.add_TrainerServicer_to_server(TrainerServicer(tracker, describe_run, control), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    bound = add_port(server, f"{host}:{port}", security)
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port} (in use or not a local address)")
    server.start()
    return server, bound
