"""One module per page, each holding that page's State."""
