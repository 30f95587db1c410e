"""The backend connection: :mod:`.process` (start/stop ``thalweg serve``), :mod:`.tasks` (QgsTasks that run
jobs) and :mod:`.client` (the backend's standard-library job client, the same file). See README.md."""
