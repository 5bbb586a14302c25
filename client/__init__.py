"""Client for the GAN services: `from client import SamplerClient`. Imports no TensorFlow."""

from client.client import GenerateResult, ModelInfo, SamplerClient, TrainerClient, TrainerStatus
from client.errors import GanServiceError

__all__ = ["GanServiceError", "GenerateResult", "ModelInfo", "SamplerClient", "TrainerClient", "TrainerStatus"]
