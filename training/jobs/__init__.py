"""The job queue: request checks, job creation (the one place that submits work), the runner that
claims and trains jobs, the progress sink and the data-folder lock."""
