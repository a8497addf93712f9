"""The learning router: it learns from the traffic it routes and calibrates the cloud threshold to a quality target.

labels.py (what a label keeps: features, never text), sampler.py (which requests get a shadow label), judge.py
(was the local answer good enough?), shadow.py (the other side's answer, off the response path, within its
budget), learn.py (the refit from the shipped weights), threshold.py and calibrate.py (the threshold for
routing.target_quality), runtime.py (what the request path asks, and the background refit). The state lives in
gateway/state/calibration.py; the routes in gateway/api/feedback.py. docs/routing.md explains the choices.
"""
