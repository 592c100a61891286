"""Marketing campaign lists: the churn list (who to call, ranked by expected loss)."""
