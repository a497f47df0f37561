"""The editors' platform: what editors, reviewers and admins do to a collection between two publishes.

``editing`` (quick edits from the workbench's inbox), ``draft`` (search the unpublished corpus),
``changesets`` (review before publish), ``accounts`` (users and roles), ``audit`` (the append-only trail),
``hits`` (per-entry hit counts). The corpus files themselves are edited by :mod:`retriever.corpus.entry_store`.
"""
