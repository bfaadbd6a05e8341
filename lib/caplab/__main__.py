from caplab.cli import main

raise SystemExit(main())
