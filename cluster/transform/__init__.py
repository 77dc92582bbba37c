"""Transform: format-preserving encryption (FF3-1), masking and tokenization.

The modules, from the bottom up: ``ff3`` (the cipher, pure), ``model`` (alphabets,
templates, transformations and roles as records, with the built-in ones and the
checks), ``state`` (the replicated tables and their commands), ``engine`` (encode and
decode on the node that received the request), ``api`` and ``cli`` (the admin API
under ``/v1/transform/`` and ``keyquorum transform``).
"""
