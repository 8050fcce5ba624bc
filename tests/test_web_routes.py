"""The review app's routes in this process (FastAPI's TestClient): what each answers signed out, signed in, for
a missing or changed film, and the worklist's identifiers hidden for shared screens."""

import dataclasses

import pytest
from fastapi.testclient import TestClient

from screening.web.app import create_app

TOKEN = "a-long-enough-review-token-for-tests"


@pytest.fixture
def signed_in(services, screened, sample_folder):
    """A browser signed in to the app over a screened sample night, identifiers hidden."""
    web = dataclasses.replace(services.settings.web, hide_identifiers=True, page_size=4)
    hiding = dataclasses.replace(services, settings=dataclasses.replace(services.settings, web=web))
    with TestClient(create_app(hiding, TOKEN)) as client:
        yield client, sample_folder


def test_routes_answer_401_403_404_409_page_the_worklist_list_batches_and_hide_identifiers(signed_in):
    client, sample_folder = signed_in
    assert client.get("/api/worklist").status_code == 401
    assert client.get("/", follow_redirects=False).headers["location"] == "/signin"
    signed = client.post("/signin", data={"token": TOKEN, "reader": "Dr Ada Reader"}, follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/"
    worklist = "".join(client.get("/", params={"page": number}).text for number in (1, 2, 3))
    assert "9RG1" not in worklist and "exam Number" not in worklist and "hidden" in worklist
    assert "2004-08-26" in worklist  # the study's date stays
    rows = [
        row
        for number in (1, 2, 3)
        for row in client.get(
            "/api/worklist", params={"page": number}, headers={"Authorization": f"Bearer {TOKEN}"}
        ).json()["rows"]
    ]
    assert len(rows) == 11
    second = client.get("/", params={"batch": "", "day": "", "status": "", "view": "", "page": 2}).text
    assert "Images 5 to 8 of 11 (page 2 of 3)." in second
    assert 'rel="prev"' in second and 'id="next-page"' in second
    wrong = client.get("/", params={"day": "07/12/2026", "status": "any"}).text  # said, not a 422
    assert wrong.count('class="problem"') == 2 and "Images 1 to 4 of 11" in wrong
    batches = client.get("/batches").text
    (batch_id,) = {row["batch_id"] for row in rows}
    assert f'href="/?batch={batch_id}"' in batches and batch_id[:8] in batches and "finished" in batches
    assert client.post(f"/images/{rows[0]['result_id']}/verdict", data={"truth": "normal"}).status_code == 403
    assert client.get("/images/999999").status_code == 404
    assert client.get("/models/999").status_code == 404
    jpeg = next(row for row in rows if row["file_name"].endswith(".jpeg") and row["status"] == "done")
    film = next(sample_folder.rglob(jpeg["file_name"]))
    film.write_bytes(b"another file now")
    changed = client.get(f"/images/{jpeg['result_id']}/film.png")
    assert changed.status_code == 409 and "changed since it was screened" in changed.json()["detail"]


def test_every_image_route_refuses_by_the_errors_category_missing_unscored_and_malformed(signed_in):
    client, _ = signed_in
    client.post("/signin", data={"token": TOKEN, "reader": "Dr Ada Reader"})
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    rows = [
        row
        for number in (1, 2, 3)
        for row in client.get("/api/worklist", params={"page": number}, headers=bearer).json()["rows"]
    ]
    unscored = next(row["result_id"] for row in rows if row["status"] == "skipped")
    csrf = client.get("/").text.split('name="csrf" value="')[1].split('"')[0]
    for route in ("film.png", "evidence.png", "input.png", "heatmap.png"):
        missing = client.get(f"/images/999999/{route}")
        assert missing.status_code == 404 and "no" in missing.json()["detail"].lower(), route
        assert client.get(f"/images/0/{route}").status_code == 422, route
        assert client.get(f"/images/{2**64}/{route}").status_code == 422, route
    for route in ("input.png", "heatmap.png", "evidence.png"):
        refused = client.get(f"/images/{unscored}/{route}")
        assert refused.status_code == 409 and refused.json()["detail"], route
    assert client.post("/images/999999/verdict", data={"truth": "normal", "csrf": csrf}).status_code == 404
    assert (
        client.post(f"/images/{rows[0]['result_id']}/verdict", data={"truth": "maybe", "csrf": csrf}).status_code == 422
    )
    assert client.get("/api/worklist", params={"status": "any"}, headers=bearer).status_code == 422
    assert client.get("/api/worklist", params={"page": 0}, headers=bearer).status_code == 422
    assert client.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
