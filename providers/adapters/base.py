"""What every adapter module shares: the options every provider config accepts.

A config's ``options`` JSON is validated against its kind's ``Options`` model, so a typo in an
option name is refused when the config is saved instead of being ignored at request time.
"""

from pydantic import BaseModel, ConfigDict, Field


class ProviderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout: float | None = Field(None, gt=0, le=3600, description="Deadline of one attempt, seconds")
    first_chunk_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: seconds to the first chunk")
    idle_timeout: float | None = Field(None, gt=0, le=3600, description="Streams: longest gap between chunks")
