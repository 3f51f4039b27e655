# Subscription and webhook-event models arrive with Paddle billing; plans live in plans.py.
