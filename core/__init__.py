"""sift: semantic passage search over news articles."""
