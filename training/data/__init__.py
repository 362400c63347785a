"""Reading and checking examples: CSV, XLSX and JSON/JSONL parsing, column mapping, validation
reports and dataset export."""
