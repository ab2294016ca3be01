"""The request log tables. They belong to the ``providers`` app (its label, its migrations, its
permissions): ``providers.models`` re-exports them, so migrations and callers keep naming them there."""

from django.db import models


class RequestLog(models.Model):
    """One API call, as an auditor reads it. Append-only: written once by the log writer, never changed."""

    request_id = models.CharField(max_length=128, db_index=True)
    created_at = models.DateTimeField(db_index=True)
    client_key_name = models.CharField(max_length=100, blank=True, db_index=True)
    client_key_prefix = models.CharField(max_length=16, blank=True)
    endpoint = models.CharField(max_length=100, db_index=True)
    mode = models.CharField(max_length=16, blank=True, help_text="single, sequential or parallel")
    status = models.PositiveSmallIntegerField(db_index=True, help_text="HTTP status of the answer")
    outcome = models.CharField(max_length=16, blank=True, help_text="ok, error, or how a stream ended")
    provider_uid = models.CharField(max_length=64, blank=True, db_index=True)
    model = models.CharField(max_length=200, blank=True, db_index=True)
    latency_ms = models.PositiveIntegerField(null=True)
    first_chunk_ms = models.PositiveIntegerField(null=True, help_text="Streams: time to the first chunk or byte")
    attempt_count = models.PositiveSmallIntegerField(default=0)
    fallbacks = models.PositiveSmallIntegerField(default=0, help_text="Attempts that failed before the one that served")
    input_tokens = models.PositiveIntegerField(null=True)
    output_tokens = models.PositiveIntegerField(null=True)
    characters = models.PositiveIntegerField(null=True, help_text="Speech: characters synthesised")
    audio_bytes = models.PositiveBigIntegerField(null=True, help_text="Speech: bytes sent; transcription: bytes uploaded")
    audio_seconds = models.FloatField(null=True, help_text="Transcription: duration of the audio")
    route = models.CharField(max_length=64, blank=True, db_index=True, help_text="The route the client named, if any")
    route_version = models.PositiveIntegerField(null=True, help_text="The version of that route that served")
    error = models.TextField(blank=True)
    prompt = models.TextField(blank=True, help_text="Only with QALBY_LOG_CONTENT on")
    answer = models.TextField(blank=True, help_text="Only with QALBY_LOG_CONTENT on")

    class Meta:
        app_label = "providers"
        ordering = ["-created_at", "-id"]
        verbose_name = "request log"

    def __str__(self) -> str:
        return f"{self.endpoint} {self.request_id}"


class Attempt(models.Model):
    """One provider try behind a request."""

    request_log = models.ForeignKey(RequestLog, on_delete=models.CASCADE, related_name="attempts")
    order = models.PositiveSmallIntegerField()
    provider_uid = models.CharField(max_length=64, db_index=True)
    model = models.CharField(max_length=200)
    outcome = models.CharField(max_length=16, db_index=True, help_text="ok, error, timeout or cancelled")
    upstream_status = models.PositiveSmallIntegerField(null=True)
    error_type = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True)
    first_chunk_ms = models.PositiveIntegerField(null=True)
    skipped_events = models.PositiveSmallIntegerField(
        default=0, help_text="Undecodable events of the provider's stream that were skipped")

    class Meta:
        app_label = "providers"
        ordering = ["request_log", "order"]

    def __str__(self) -> str:
        return f"#{self.order} {self.provider_uid}/{self.model}: {self.outcome}"


class DatabaseOutage(models.Model):
    """A stretch of time one server process could not reach the database and served from its caches;
    written by that process when the database answered again (providers/outage.py)."""

    replica = models.CharField(max_length=255, help_text="The host name of the process that saw it")
    began_at = models.DateTimeField(db_index=True)
    ended_at = models.DateTimeField()
    stale_reads = models.PositiveIntegerField(
        default=0, help_text="Configs, keys and routes served from the cache while it lasted")

    class Meta:
        app_label = "providers"
        ordering = ["-began_at"]

    def __str__(self) -> str:
        return f"{self.replica}: {self.began_at:%Y-%m-%d %H:%M:%S} for {self.seconds:.0f} s"

    @property
    def seconds(self) -> float:
        return (self.ended_at - self.began_at).total_seconds()
