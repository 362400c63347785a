"""Value types every layer shares, with no dependency outside this package: errors, the dataset
and prompt template, tuning settings, limits, job states, progress records, generation settings,
atomic writes, disk-space checks and the layout of the data folder and of a tuned model's folder."""
