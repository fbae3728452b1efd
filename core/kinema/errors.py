"""kinema's exceptions. Every message says what went wrong and what to do about it."""


class KinemaError(Exception):
    """Base for errors a user can act on; hosts show ``str(error)`` as one line."""


class InvalidRequestError(KinemaError, ValueError):
    """A request field is out of range or unreadable."""


class UnknownBackendError(KinemaError, KeyError):
    """No backend is registered under that name or alias."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingWeightsError(KinemaError):
    """The backend's model is not on this machine."""


class GenerationCancelled(KinemaError):
    """The caller cancelled the generation; the next one works."""


class OutputError(KinemaError, OSError):
    """A clip could not be written; no partial file was left behind."""


class OutOfMemoryError(KinemaError, MemoryError):
    """The device ran out of memory even with the lightest memory policy kinema could step down to."""


class LicenceNotAcceptedError(KinemaError):
    """A model's licence restricts its use and was not accepted (``kinema models pull --accept-license``)."""


class DownloadError(KinemaError, OSError):
    """A download could not finish (offline, no such model, gated, a dropped connection); what came resumes."""
