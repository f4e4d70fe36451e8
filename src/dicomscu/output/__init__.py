"""Everything dicomscu prints: logs, results, summaries, progress bars."""
