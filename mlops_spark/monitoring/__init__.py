"""Monitoring: data and prediction drift, performance with delayed labels, alerts,
the HTML report and the k-of-n retraining rule."""
