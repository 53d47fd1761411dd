"""The serving process needs no torch, Lightning, Hydra or tree library."""


def test_serving_never_imports_torch_lightning_or_hydra(fresh_serving_process):
    # the CLI's app, a forecast from a netCDF history and one HTTP forecast, in a new process
    assert fresh_serving_process["heavy"] == []
