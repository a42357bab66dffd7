"""Qualification: Intercom contact changes (webhooks, reconciliation checks) judged against the
campaign's rule (domain/qualification.py); a met rule marks the referral qualified in Referral
Factory exactly once. Two use cases, contact_events and checks, share one batched read (batch.py)
and the Qualifier (qualifier.py)."""
