"""`python -m tinydistill.report`."""

from tinydistill.report import main

main()
