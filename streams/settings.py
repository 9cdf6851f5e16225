"""The one typed settings object, read from the environment once and passed down.

Every setting has a `CALLSTT_*` variable; the settings of the HTTP service this project
replaces keep their old names (USE_PHOWHISPER, USE_FASTER_WHISPER, MODEL_SIZE,
COMPUTE_TYPE, DEVICE, OMP_NUM_THREADS) so existing deployments keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from callstt.schemas.codec import history_file
from callstt.schemas.errors import CallsttError

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


class SettingsError(CallsttError, ValueError):
    """A setting in the environment has a value that cannot be used."""


def env(*names: str, default: Any, doc: str, choices: tuple[str, ...] = ()) -> Any:
    """A settings field read from the first of `names` that is set in the environment; with `choices`,
    any other value is refused."""
    return field(default=default, metadata={"env": names, "doc": doc, "choices": choices})


@dataclass(frozen=True)
class Settings:
    # Kafka
    kafka_bootstrap_servers: str = env("CALLSTT_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS",
                                       default="127.0.0.1:9092", doc="Kafka bootstrap servers")
    kafka_security_protocol: str = env("CALLSTT_KAFKA_SECURITY_PROTOCOL", default="PLAINTEXT",
                                       doc="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: str = env("CALLSTT_KAFKA_SASL_MECHANISM", default="SCRAM-SHA-256",
                                    doc="SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
    kafka_sasl_username: str = env("CALLSTT_KAFKA_SASL_USERNAME", default="", doc="SASL user")
    kafka_sasl_password: str = env("CALLSTT_KAFKA_SASL_PASSWORD", default="", doc="SASL password (never logged)")
    kafka_ssl_cafile: str = env("CALLSTT_KAFKA_SSL_CAFILE", default="", doc="CA bundle for TLS to the brokers")
    kafka_ssl_certfile: str = env("CALLSTT_KAFKA_SSL_CERTFILE", default="", doc="Client certificate (mutual TLS)")
    kafka_ssl_keyfile: str = env("CALLSTT_KAFKA_SSL_KEYFILE", default="", doc="Client key (mutual TLS)")
    app_id: str = env("CALLSTT_APP_ID", default="callstt", doc="Faust app id = consumer group id")
    audio_topic: str = env("CALLSTT_AUDIO_TOPIC", default="callstt.audio", doc="Topic of AudioChunk events")
    transcript_topic: str = env("CALLSTT_TRANSCRIPT_TOPIC", default="callstt.transcripts",
                                doc="Topic of Transcript events")
    partial_topic: str = env("CALLSTT_PARTIAL_TOPIC", default="callstt.transcripts.partial",
                             doc="Topic of interim Transcript events (is_final false) while people speak")
    translation_topic: str = env("CALLSTT_TRANSLATION_TOPIC", default="callstt.translations",
                                 doc="Topic of Translation events (the translation agent's output)")
    partial_translation_topic: str = env("CALLSTT_PARTIAL_TRANSLATION_TOPIC", default="callstt.translations.partial",
                                         doc="Topic of interim Translation events (is_final false): the stable "
                                             "words of interim transcripts, for calls that ask for them")
    speech_topic: str = env("CALLSTT_SPEECH_TOPIC", default="callstt.speech",
                            doc="Topic of synthesized speech (AudioChunk events of the translated legs, "
                                "e.g. stream caller>pt)")
    dead_letter_topic: str = env("CALLSTT_DEAD_LETTER_TOPIC", default="callstt.dead-letter",
                                 doc="Topic of rejected input records (reason in a header)")
    call_settings_topic: str = env("CALLSTT_CALL_SETTINGS_TOPIC", default="callstt.call-settings",
                                   doc="Compacted topic of per-call options (CallSettings, key = call ID), "
                                       "co-partitioned with the audio topic")
    topic_partitions: int = env("CALLSTT_TOPIC_PARTITIONS", default=6, doc="Partitions of the audio topic and tables")
    topic_replication: int = env("CALLSTT_TOPIC_REPLICATION", default=1, doc="Replication factor of created topics")
    schema_registry_url: str = env("CALLSTT_SCHEMA_REGISTRY_URL", default="",
                                   doc="Confluent-compatible Schema Registry URL; empty = embedded schema ids")
    write_schemas: str = env("CALLSTT_WRITE_SCHEMA_VERSIONS", default="",
                             doc="Rolling upgrades: records to write in an earlier schema version while the "
                                 "previous version still runs, e.g. 'Transcript=3' (docs/upgrades.md)")
    # Models (seed service names first)
    use_faster_whisper: bool = env("USE_FASTER_WHISPER", "CALLSTT_USE_FASTER_WHISPER", default=True,
                                   doc="Serve non-Vietnamese languages with faster-whisper (the only multilingual "
                                       "backend: false is refused at start)")
    use_phowhisper: bool = env("USE_PHOWHISPER", "CALLSTT_USE_PHOWHISPER", default=False,
                               doc="Serve Vietnamese with PhoWhisper")
    model: str = env("MODEL_SIZE", "CALLSTT_MODEL", default="base",
                     doc="faster-whisper model: packaged name, local directory or hub id")
    phowhisper_model: str = env("CALLSTT_PHOWHISPER_MODEL", default="",
                                doc="PhoWhisper checkpoint: local directory or hub id")
    phowhisper_backend: str = env("CALLSTT_PHOWHISPER_BACKEND", default="auto",
                                  doc="How PhoWhisper runs: converted (CTranslate2, converted once into the model "
                                      "cache), transformers, or auto (a CTranslate2 directory or converted copy when "
                                      "there is one, else transformers)")
    phowhisper_quantization: str = env("CALLSTT_PHOWHISPER_QUANTIZATION", default="int8",
                                       doc="Quantization of PhoWhisper's CTranslate2 conversion: int8, int8_float16, "
                                           "float16 or float32")
    routes: str = env("CALLSTT_ROUTES", default="",
                      doc="More languages with a model of their own: LANG=BACKEND@MODEL, comma-separated, e.g. "
                          "'ja=auto@/models/kotoba-whisper-ct2'. BACKEND: auto, converted or transformers (as "
                          "CALLSTT_PHOWHISPER_BACKEND), or module:function, the loader of a backend of your own "
                          "(streams/model_routes.py). The other languages use the multilingual model")
    torch_dtype: str = env("CALLSTT_TORCH_DTYPE", default="auto",
                           doc="dtype of the transformers backend: auto (float32 on CPU, float16 on CUDA), "
                               "float32, float16 or bfloat16")
    compute_type: str = env("COMPUTE_TYPE", "CALLSTT_COMPUTE_TYPE", default="int8", doc="CTranslate2 compute type")
    device: str = env("DEVICE", "CALLSTT_DEVICE", default="cpu", doc="cpu or cuda")
    cpu_threads: int = env("OMP_NUM_THREADS", "CALLSTT_CPU_THREADS", default=0,
                           doc="Threads per model call (0 = library default)")
    model_lanes: int = env("CALLSTT_MODEL_LANES", default=1,
                           doc="Model calls at once, each for its own streams' utterances (CTranslate2's "
                               "num_workers, each with the threads above; docs/benchmark.md)")
    model_version: str = env("CALLSTT_MODEL_VERSION", default="",
                             doc="Label written into transcripts (default: model name and compute type)")
    beam_size: int = env("CALLSTT_BEAM_SIZE", default=1, doc="Beam size (1 = greedy, fastest)")
    fast_language_detection: bool = env("CALLSTT_FAST_LANGUAGE_DETECTION", default=True,
                                        doc="Detect a language from the utterance alone (10-20x cheaper), checking "
                                            "unsure answers with Whisper's full 30 s window; false: always the full window")
    inference_mode: str = env("CALLSTT_INFERENCE_MODE", default="packed",
                              choices=("single", "batched", "packed"),  # what models.asr.batching implements
                              doc="How utterances ready at once (across calls) meet the model (models/asr/batching.py): "
                                  "single (one per model call), batched (one window each, sized by "
                                  "CALLSTT_MIN_WINDOW_S, one batched call) "
                                  "or packed (short utterances of one language share 30 s windows)")
    kafka_session_timeout_s: float = env("CALLSTT_KAFKA_SESSION_TIMEOUT_S", default=60.0,
                                         doc="How long the group waits for a silent worker before its partitions "
                                             "move to the others (a crashed worker's calls wait this long)")
    batch_max_events: int = env("CALLSTT_BATCH_MAX_EVENTS", default=2000,
                                doc="Most input records the agent takes as one batch: every utterance they finish "
                                    "meets the model together, and their table writes are made once")
    batch_wait_s: float = env("CALLSTT_BATCH_WAIT_S", default=0.05,
                              doc="Longest wait for a batch to fill, in seconds (adds at most this to latency)")
    checkpoint_interval_s: float = env("CALLSTT_CHECKPOINT_INTERVAL_S", default=10.0,
                                       doc="Longest a stream's state changes wait in the worker before they are "
                                           "written to the table's changelog (also written at its end, an idle "
                                           "flush, and a rebalance); its records are committed only then (and "
                                           "not while their audio is kept for an open utterance), so after a crash "
                                           "a worker's successor repeats at most this much audio plus the open "
                                           "utterance, publishing again, with the same ids, the finals among it")
    inference_batch_size: int = env("CALLSTT_INFERENCE_BATCH_SIZE", default=8,
                                    doc="Most windows per batched model call (batched and packed modes)")
    pack_window_s: float = env("CALLSTT_PACK_WINDOW_S", default=28.0,
                               doc="Longest packed window in seconds (packed mode; Whisper's window is 30 s)")
    pack_gap_s: float = env("CALLSTT_PACK_GAP_S", default=0.8,
                            doc="Silence placed between packed utterances, in seconds (packed mode)")
    min_window_s: float = env("CALLSTT_MIN_WINDOW_S", default=30.0,
                              doc="Batched mode: each utterance's encoder window is its length rounded up to 5 s, "
                                  "at least this; 30 = Whisper's own 30 s window (shorter is cheaper, and on real "
                                  "English speech less accurate: docs/benchmark.md)")
    languages: str = env("CALLSTT_LANGUAGES", default="",
                         doc="Languages a call may be in, comma-separated Whisper codes (e.g. vi,en): detection "
                             "picks among them only; empty = any language. A chunk's language hint still wins")
    hotwords: str = env("CALLSTT_HOTWORDS", default="",
                        doc="Words every call's model should expect (product names, surnames), comma-separated; "
                            "a call's settings replace them")
    initial_prompt: str = env("CALLSTT_INITIAL_PROMPT", default="",
                              doc="Context text given to the model for every call; a call's settings replace it")
    redact: str = env("CALLSTT_REDACT", default="",
                      doc="What to redact from transcripts before they leave the worker: card, phone, email, id "
                          "(comma-separated) or all; empty = nothing. A call's settings replace it")
    redact_patterns: str = env("CALLSTT_REDACT_PATTERNS", default="",
                               doc="Regular expressions redacted as [ID] (national ID formats), separated by ';;'; "
                                   "matched on the text with spoken digits written as digits")
    phone_region: str = env("CALLSTT_PHONE_REGION", default="US",
                            doc="Region for phone numbers written without a country code (ISO 3166, e.g. US, GB, VN)")
    # The guard against invented text (models/text/guard.py): a transcript is dropped when any rule holds.
    guard_min_speech_ratio: float = env("CALLSTT_GUARD_MIN_SPEECH_RATIO", default=0.02,
                                        doc="Drop text when less than this share of the utterance is speech to "
                                            "the VAD (unless the decode is confident); 0 = off")
    guard_vad_threshold: float = env("CALLSTT_GUARD_VAD_THRESHOLD", default=0.35,
                                     doc="Silero probability from which a 32 ms window counts as speech for the guard")
    guard_no_speech_prob: float = env("CALLSTT_GUARD_NO_SPEECH_PROB", default=0.6,
                                      doc="Drop text when Whisper's no-speech probability is above this and the "
                                          "decode is weak (Whisper's own rule); above 1 = off")
    guard_max_compression_ratio: float = env("CALLSTT_GUARD_MAX_COMPRESSION_RATIO", default=2.4,
                                             doc="Drop text that compresses better than this (a decoding loop); "
                                                 "inf = off")
    guard_ngram_repeats: int = env("CALLSTT_GUARD_NGRAM_REPEATS", default=3,
                                   doc="Drop text repeating a 3-word sequence this many times; 0 = off")
    guard_word_run: int = env("CALLSTT_GUARD_WORD_RUN", default=4,
                              doc="Drop text repeating one word this many times in a row (numbers: 8); 0 = off")
    guard_phrases: bool = env("CALLSTT_GUARD_PHRASES", default=True,
                              doc="Drop known invented phrases (\"thanks for watching\", subtitle credits) "
                                  "when the utterance is mostly not speech")
    allow_hub_download: bool = env("CALLSTT_ALLOW_HUB_DOWNLOAD", default=False,
                                   doc="Allow downloading models from the Hugging Face hub")
    model_cache_dir: str = env("CALLSTT_MODEL_CACHE_DIR", default="",
                               doc="Where assembled/downloaded models are kept (default ~/.cache/callstt/models)")
    # Endpointing
    min_silence_ms: int = env("CALLSTT_MIN_SILENCE_MS", default=600, doc="Silence that ends an utterance")
    max_utterance_ms: int = env("CALLSTT_MAX_UTTERANCE_MS", default=15000, doc="Longest utterance before a cut")
    speculate_ms: int = env("CALLSTT_SPECULATE_MS", default=300,
                            doc="Silence at which the model starts on an utterance before its end is sure "
                                "(kept unpublished until CALLSTT_MIN_SILENCE_MS confirms it); 0 = off")
    latency_budget_ms: int = env("CALLSTT_LATENCY_BUDGET_MS", default=1600,
                                 doc="End of speech -> transcript target; while finals are later than this, "
                                     "no speculative work runs")
    partial_interval_ms: int = env("CALLSTT_PARTIAL_INTERVAL_MS", default=1000,
                                   doc="Speech between interim transcripts of an open utterance (best effort: "
                                       "skipped while finals are due); 0 = no interims")
    partial_window_s: float = env("CALLSTT_PARTIAL_WINDOW_S", default=10.0,
                                  doc="Shortest encoder window of an interim (the final uses the full one)")
    translate_to: str = env("CALLSTT_TRANSLATE_TO", default="",
                            doc="Languages (ISO 639-1, comma-separated) the translation agent translates final "
                                "transcripts into when a call's settings name none; empty: none")
    translate_interims: bool = env("CALLSTT_TRANSLATE_INTERIMS", default=False,
                                   doc="Also translate the stable words of interim transcripts as they grow, "
                                       "when a call's settings do not say (translate_interims)")
    translation_backends: str = env("CALLSTT_TRANSLATION_BACKENDS", default="bergamot",
                                    doc="Translation backends, in order of preference (bergamot: the packaged "
                                        "English<->Portuguese models; ctranslate2: the models of "
                                        "CALLSTT_CT2_TRANSLATION_DIR)")
    ct2_translation_dir: str = env("CALLSTT_CT2_TRANSLATION_DIR", default="",
                                   doc="Directory of CTranslate2 translation models, one folder per model "
                                       "(NLLB-200, M2M-100, opus-mt converted with ct2-transformers-converter); "
                                       "used by the ctranslate2 translation backend")
    translator_web_port: int = env("CALLSTT_TRANSLATOR_WEB_PORT", default=6067,
                                   doc="The translation agent's web server port (/health, /metrics)")
    speech_voices: str = env("CALLSTT_SPEECH_VOICES", default="",
                             doc="The speech agent's voice per language, comma-separated language=engine "
                                 "(en=piper:joe, en=piper:/voices/x.onnx, pt=espeak-ng); espeak-ng for the rest")
    speaker_web_port: int = env("CALLSTT_SPEAKER_WEB_PORT", default=6068,
                                doc="The speech agent's web server port (/health, /metrics)")
    idle_flush_s: float = env("CALLSTT_IDLE_FLUSH_S", default=5.0,
                              doc="Flush a stream's open utterance after this long without chunks")
    stream_ttl_s: float = env("CALLSTT_STREAM_TTL_S", default=600.0,
                              doc="Forget a stream's state after this long without chunks (an ended "
                                  "stream's small record too: until then its chunks read again are duplicates)")
    call_settings_ttl_s: float = env("CALLSTT_CALL_SETTINGS_TTL_S", default=30 * 86400.0,
                                     doc="Forget a call's settings this long after they were set (also the "
                                         "call-settings topic's retention)")
    max_streams: int = env("CALLSTT_MAX_STREAMS", default=10000,
                           doc="Most streams a worker keeps; the longest idle are evicted beyond it")
    overload_lag_records: int = env("CALLSTT_OVERLOAD_LAG_RECORDS", default=1000,
                                    doc="/health reports 'overloaded' above this many unread audio records")
    stall_after_s: float = env("CALLSTT_STALL_AFTER_S", default=120.0,
                               doc="A batch (or a downstream record) failing this long, even with a passing "
                                   "cause (broker away, leader moving), makes /health answer 503 'stalled'; a "
                                   "permanent cause (partition mismatch, a schema it cannot write) does at once")
    stall_exit_after_s: float = env("CALLSTT_STALL_EXIT_AFTER_S", default=300.0,
                                    doc="A process stalled this long exits non-zero (code 3) so its supervisor "
                                        "restarts it; its records stay uncommitted, nothing is lost")
    start_timeout_s: float = env("CALLSTT_START_TIMEOUT_S", default=60.0,
                                 doc="At start, how long to wait for the broker to answer and for every topic "
                                     "the process reads or writes to show its partitions")
    # Worker
    web_host: str = env("CALLSTT_WEB_HOST", default="127.0.0.1", doc="Worker web server bind address")
    web_port: int = env("CALLSTT_WEB_PORT", default=6066, doc="Worker web server port")
    metrics_port: int = env("CALLSTT_METRICS_PORT", default=0,
                            doc="Also serve /metrics on this port (on CALLSTT_WEB_HOST), alone, so that a network "
                                "policy can let Prometheus reach the metrics and nothing else; the web port's "
                                "/metrics then needs the web credential. 0: only on the web port, open")
    data_dir: str = env("CALLSTT_DATA_DIR", default=".local/worker", doc="Faust table data (rocksdict)")
    web_tokens_file: str = env("CALLSTT_WEB_TOKENS_FILE", default="",
                               doc="File of bearer tokens (one per line, at least 24 characters; several for "
                                   "rotation) that the pages with call content require (the live page, /calls, "
                                   "/calls/speech, POST /transcribe, Faust's debug pages); /health, /metrics, "
                                   "/api and /models stay open. Unset on a loopback address: a token is made in "
                                   "CALLSTT_DATA_DIR/web-token. Unset on any other address: the process refuses "
                                   "to start, unless CALLSTT_WEB_INSECURE")
    web_insecure: bool = env("CALLSTT_WEB_INSECURE", default=False,
                             doc="Serve the pages with call content without a credential, on any address "
                                 "(warned at every start); only behind something that authenticates")
    web_debug_pages: bool = env("CALLSTT_WEB_DEBUG_PAGES", default=False,
                                doc="Faust's own pages (/router/, /table/: table contents, i.e. call state), "
                                    "behind the same credential")
    # Gateway (callstt gateway: WebSocket clients in Deepgram's live-API shape)
    gateway_host: str = env("CALLSTT_GATEWAY_HOST", default="127.0.0.1", doc="The gateway's bind address")
    gateway_port: int = env("CALLSTT_GATEWAY_PORT", default=6070,
                            doc="The gateway's port: /v1/listen (WebSocket), /listen (the listening page), "
                                "/health, /metrics")
    gateway_session_topic: str = env("CALLSTT_GATEWAY_SESSION_TOPIC", default="callstt.gateway-sessions",
                                     doc="Compacted topic of where each gateway stream stands (next seq, audio "
                                         "acknowledged, finals sent), so a client reconnecting to any gateway "
                                         "resumes")
    gateway_max_ahead_s: float = env("CALLSTT_GATEWAY_MAX_AHEAD_S", default=5.0,
                                     doc="How far a connection's audio may run ahead of real time before the "
                                         "gateway stops reading it (a faster client is slowed, not buffered)")
    gateway_idle_close_s: float = env("CALLSTT_GATEWAY_IDLE_CLOSE_S", default=10.0,
                                      doc="Close a connection that sent neither audio nor KeepAlive this long "
                                          "(Deepgram's NET-0001)")
    gateway_close_wait_s: float = env("CALLSTT_GATEWAY_CLOSE_WAIT_S", default=30.0,
                                      doc="After CloseStream the gateway waits for the finals of the speech it "
                                          "sent (an interim without its final, or loud audio after the last "
                                          "final) before it sends Metadata and closes: it gives up when no "
                                          "transcript of its calls came this long, or after ten times this")
    log_level: str = env("CALLSTT_LOG_LEVEL", default="info", doc="Log level")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read every field from the environment; keyword overrides (e.g. CLI flags) win."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            for name in f.metadata["env"]:
                if name in environ:
                    values[f.name] = _convert(environ[name], type(f.default), name)
                    break
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        for f in fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices", ())
            if choices and value not in choices:
                raise SettingsError(f"{f.metadata['env'][0]}={value!r}: use one of {', '.join(choices)}")
        if self.batch_max_events < 1 or self.batch_wait_s <= 0:
            raise SettingsError("CALLSTT_BATCH_MAX_EVENTS must be >= 1 and CALLSTT_BATCH_WAIT_S > 0")
        if self.checkpoint_interval_s <= 0:
            raise SettingsError(f"CALLSTT_CHECKPOINT_INTERVAL_S={self.checkpoint_interval_s}: use a number > 0")
        if not 1 <= self.model_lanes <= 16:
            raise SettingsError(f"CALLSTT_MODEL_LANES={self.model_lanes}: use 1 to 16")
        if self.stall_after_s <= 0 or self.stall_exit_after_s <= 0 or self.start_timeout_s <= 0:
            raise SettingsError("CALLSTT_STALL_AFTER_S, CALLSTT_STALL_EXIT_AFTER_S and CALLSTT_START_TIMEOUT_S "
                                "must be > 0")
        if self.speculate_ms < 0 or self.latency_budget_ms <= 0:
            raise SettingsError("CALLSTT_SPECULATE_MS must be >= 0 and CALLSTT_LATENCY_BUDGET_MS > 0")
        if self.partial_interval_ms < 0 or not 1 <= self.partial_window_s <= 30:
            raise SettingsError(f"CALLSTT_PARTIAL_INTERVAL_MS={self.partial_interval_ms} / CALLSTT_PARTIAL_WINDOW_S="
                                f"{self.partial_window_s}: use an interval >= 0 ms and a window of 1 to 30 s")
        if not 1 <= self.min_window_s <= 30:
            raise SettingsError(f"CALLSTT_MIN_WINDOW_S={self.min_window_s}: use 1 to 30 seconds")
        self.write_schema_versions  # noqa: B018 (raises SettingsError for a bad value)

    @property
    def write_schema_versions(self) -> dict[str, int]:
        """CALLSTT_WRITE_SCHEMA_VERSIONS as record name -> earlier version: 'Transcript=3' -> {'Transcript': 3}."""
        versions: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in self.write_schemas.split(","))):
            name, _, version = item.partition("=")
            try:
                versions[name.strip()] = int(version)
                history_file(name.strip(), int(version))
            except ValueError as error:
                raise SettingsError(f"CALLSTT_WRITE_SCHEMA_VERSIONS={self.write_schemas!r}: {item!r}: "
                                    f"{error if 'earlier' in str(error) else 'use RECORD=VERSION, e.g. Transcript=3'}") from None
        return versions

    @classmethod
    def choices(cls, name: str) -> tuple[str, ...]:
        """The values a setting allows (e.g. `Settings.choices("inference_mode")`), () if any."""
        return next(f.metadata.get("choices", ()) for f in fields(cls) if f.name == name)

    def with_overrides(self, **overrides: Any) -> "Settings":
        return replace(self, **{key: value for key, value in overrides.items() if value is not None})

    @property
    def uses_sasl(self) -> bool:
        return self.kafka_security_protocol.upper().startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        return self.kafka_security_protocol.upper() in ("SSL", "SASL_SSL")

    def __repr__(self) -> str:  # keeps the password out of tracebacks and logs
        return f"Settings({self.describe()})"

    @property
    def language_list(self) -> tuple[str, ...]:
        """CALLSTT_LANGUAGES as codes: "vi, EN" -> ("vi", "en")."""
        return language_codes(self.languages)

    @property
    def translate_to_list(self) -> tuple[str, ...]:
        """CALLSTT_TRANSLATE_TO as codes: "pt, EN" -> ("pt", "en")."""
        return language_codes(self.translate_to)

    @property
    def hotword_list(self) -> tuple[str, ...]:
        """CALLSTT_HOTWORDS as words: "Zyntra, Kowalczyk" -> ("Zyntra", "Kowalczyk")."""
        return tuple(word.strip() for word in self.hotwords.split(",") if word.strip())

    @property
    def model_version_label(self) -> str:
        return self.model_version or f"{self.model}-{self.compute_type}"

    @property
    def model_cache_path(self) -> Path | None:
        return Path(self.model_cache_dir) if self.model_cache_dir else None

    def describe(self) -> dict[str, Any]:
        """Settings as a dict for logs and web pages; values that look secret are masked."""
        return {f.name: ("***" if _looks_secret(f.name) else getattr(self, f.name)) for f in fields(self)}


DEFAULT_TOPIC_PREFIX = "callstt"  # every topic setting's default starts with it: "callstt.audio"


def setting_variable(field_name: str) -> str:
    """The environment variable of a Settings field ("web_port" -> "CALLSTT_WEB_PORT")."""
    [found] = [f for f in fields(Settings) if f.name == field_name]
    return found.metadata["env"][0]


def prefixed_topics(prefix: str) -> dict[str, tuple[str, str]]:
    """Every topic setting, named under `prefix` instead of "callstt" ("w1.audio"): field name ->
    (its variable, the topic). How a test or bench run keeps to topics of its own."""
    return {f.name: (f.metadata["env"][0], prefix + f.default.removeprefix(DEFAULT_TOPIC_PREFIX))
            for f in fields(Settings) if f.name.endswith("_topic")}


def language_codes(text: str) -> tuple[str, ...]:
    """A comma-separated list of language codes as lower-case codes: "vi, EN" -> ("vi", "en")."""
    return tuple(code.strip().lower() for code in text.split(",") if code.strip())


def _convert(raw: str, kind: type, name: str) -> Any:
    text = raw.strip()
    try:
        if kind is bool:
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise ValueError(text)
        return kind(text)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def _looks_secret(name: str) -> bool:
    return any(word in name for word in ("password", "secret", "token"))
