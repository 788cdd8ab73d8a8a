"""The stack's ceiling: a functions-framework function that only reads the body and answers."""


def predict(request):  # type: ignore[no-untyped-def]
    request.get_data()
    return b"", 200, {"Content-Type": "application/octet-stream"}
