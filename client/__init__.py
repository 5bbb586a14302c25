"""Client for the GAN services: `from client import SamplerClient`. Imports no TensorFlow."""

from client.client import (Checkpointed, Credentials, GenerateResult, ModelInfo, SamplerClient, TrainerClient,
                           TrainerStatus, VersionInfo)
from client.errors import GanServiceError

__all__ = ["Checkpointed", "Credentials", "GanServiceError", "GenerateResult", "ModelInfo", "SamplerClient",
           "TrainerClient", "TrainerStatus", "VersionInfo"]
