from intdistill.cli import main

raise SystemExit(main())
