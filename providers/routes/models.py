"""The route tables: a route and its ordered entries."""

import re

from django.core.exceptions import ValidationError
from django.db import models

from providers.hedging import MAX_DELAY

KINDS = [("chat", "chat"), ("speech", "speech"), ("transcription", "transcription")]
STRATEGIES = [("sequential", "sequential"), ("parallel", "parallel")]
ON_STREAM_FAILURE = [("", "default (QALBY_STREAM_FAILURE)"), ("restart", "restart"), ("error", "error")]


def validate_model(value: str) -> None:
    from providers.schemas import MODEL  # the same rule as a request's model (schemas import these tables)

    if not re.match(MODEL, value):
        raise ValidationError("not a model name (letters, digits, - _ : @ + ~ =, a dot or slash between names)")


def validate_hedge(value: str) -> None:
    if value in ("", "auto", "off"):
        return
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= MAX_DELAY:
        raise ValidationError(f"seconds (more than 0, at most {MAX_DELAY:g}), auto, off, or empty for the default")


class Route(models.Model):
    """A chain of provider requests, named; ``version`` grows with every change (request logs keep it)."""

    name = models.SlugField(max_length=64, unique=True,
                            help_text="What clients send as \"route\" (and as the model of /v1)")
    kind = models.CharField(max_length=16, choices=KINDS)
    strategy = models.CharField(max_length=16, choices=STRATEGIES, default="sequential")
    timeout_per_request = models.FloatField(null=True, blank=True, help_text="Seconds; empty: each config's, else the setting")
    timeout_total = models.FloatField(null=True, blank=True, help_text="Seconds for the whole chain")
    first_chunk_timeout = models.FloatField(null=True, blank=True, help_text="Streams: seconds to the first chunk")
    idle_timeout = models.FloatField(null=True, blank=True, help_text="Streams: longest gap between chunks")
    hedge_after = models.CharField(max_length=16, blank=True, validators=[validate_hedge],
                                   help_text="Seconds, auto or off; empty: each config's option, else auto for streams")
    on_stream_failure = models.CharField(max_length=8, blank=True, choices=ON_STREAM_FAILURE)
    enabled = models.BooleanField(default=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "providers"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        for field in ("timeout_per_request", "timeout_total", "first_chunk_timeout", "idle_timeout"):
            value = getattr(self, field)
            if value is not None and not 0 < value <= 7200:
                raise ValidationError({field: "seconds, more than 0 and at most 7200"})


class RouteEntry(models.Model):
    """One request of a route's chain: which config, which model, the settings it sends by default."""

    route = models.ForeignKey(Route, on_delete=models.CASCADE, related_name="entries")
    position = models.PositiveSmallIntegerField(default=0, help_text="Entries run in this order")
    config = models.ForeignKey("providers.ProviderConfig", on_delete=models.PROTECT, related_name="route_entries",
                               verbose_name="provider config")
    model = models.CharField(max_length=200, validators=[validate_model])
    settings = models.JSONField(default=dict, blank=True,
                                help_text="This entry's defaults: chat {\"gen_config\": {...}}; speech {\"voice\": ..., "
                                          "\"output_format\": ..., \"gen_config\": {...}}; transcription "
                                          "{\"language\": ..., \"gen_config\": {...}}")
    first_chunk_timeout = models.FloatField(null=True, blank=True)
    idle_timeout = models.FloatField(null=True, blank=True)

    class Meta:
        app_label = "providers"
        ordering = ["route", "position", "pk"]
        verbose_name_plural = "route entries"

    def __str__(self) -> str:
        return f"{self.position}: {self.config_id and self.config.uid}/{self.model}"
