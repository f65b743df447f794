"""Drop-in fronts for code written against other Gearman libraries: ``gear.compat.gearman``
(python-gearman 2.0) and ``gear.compat.pygear`` (pygear). See docs/migrating.md."""
