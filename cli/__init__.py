"""The `sift` command line: options, then Settings, then one engine call, then rendering."""
