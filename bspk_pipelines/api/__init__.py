"""The REST API over the warehouse: Extraction API, Platform API and import upload (`bspk serve`)."""
