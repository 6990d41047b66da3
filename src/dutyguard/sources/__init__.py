"""Sources turn inputs (files, stdin, requests) into resources."""
