"""A delivered file's way, one module a step: taken from its drop folder (`drop`), landed and
claimed (`land`), read and checked (`parse`, `mapping`, `rules`, `check`, with rows unchanged since
the source's last file set aside: `unchanged`), limited to what its source may set (`precedence`,
`contribute`), and applied to the platform tables (`apply`; sales by month: `months`). The `files`
table is the `ledger`'s; paths are the `layout`'s.

Each step reads what the previous one left (the landed file, then parquet parts in the claim's
work folder), records its outcome in the ledger and can be run again safely: a step that finds its
file already past it changes nothing. Several runs may reach the same file at once (the sensor's,
`bspk sync`, the UI's): every step holds the brand's writer lock (`warehouse.locks`) while it
works, and moves the file on only from the status the step before left.
"""
