"""Readers of the shapes a brand's export comes in besides delimited text (`ingest.parse`): fixed
width, Excel, JSON and JSON Lines, Parquet; and the decompression of a gzip file. `ingest.read`
chooses among them by the source's dialect."""
