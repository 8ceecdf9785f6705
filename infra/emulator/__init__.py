"""An offline emulator of the Encord platform for the unmodified ``encord`` SDK. See README.md."""

from infra.emulator.faults import FaultRule
from infra.emulator.fixtures import FixtureSpec, SeededFixture, SeededProject
from infra.emulator.server import Emulator

__all__ = ["Emulator", "FaultRule", "FixtureSpec", "SeededFixture", "SeededProject"]
